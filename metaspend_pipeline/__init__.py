"""metaspend-pipeline: Meta ad spend into a warehouse, and ROAS people trust, with Dagster."""
