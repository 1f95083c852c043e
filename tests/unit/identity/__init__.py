"""Tests of shared.identity: Latin-American phones, e-mail and national IDs."""
