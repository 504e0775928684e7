"""What trained models learned: layer activations, their projections and linear probes."""
