"""What won: plain ANNs, CNNs and Transformers, built to be compared on the same budget."""
