"""The monitor: drift and live-performance checks, and the GitHub trigger that asks for a retrain."""
