"""Building blocks shared by the models (convolutions, weight norm, gates, conditioning)."""
