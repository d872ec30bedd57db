"""Measure the service on question sets: python -m evaluation."""
