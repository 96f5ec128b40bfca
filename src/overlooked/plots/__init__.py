"""Pure functions from results to figures. They read outputs and never train."""
