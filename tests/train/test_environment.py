from __future__ import annotations

import itertools

from overlooked.train import environment as env_mod


def test_every_run_of_a_process_records_the_commit_it_started_from(monkeypatch):
    """A long --each run writes one environment.json per sub-run; a commit made meanwhile must not appear
    in them, since the process still runs the code it imported."""
    commits = (f"c{i}" for i in itertools.count())
    monkeypatch.setattr(env_mod, "git_commit", lambda cwd=None: next(commits))
    env_mod.process_commit.cache_clear()
    try:
        first, later = env_mod.environment(), env_mod.environment()
        assert first["git_commit"] == later["git_commit"] == "c0"
        assert next(commits) == "c1"  # git was asked once
    finally:
        env_mod.process_commit.cache_clear()


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert env_mod.git_commit(tmp_path) == "unknown"
