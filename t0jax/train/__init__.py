"""Training: the loop, its optimizer, metrics writers, FLOP counts and capacity planning."""
