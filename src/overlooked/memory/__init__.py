"""Memory networks: MemNN (Weston et al. 2014), MemN2N (Sukhbaatar et al. 2015), KV-MemNN (Miller et al. 2016)."""
