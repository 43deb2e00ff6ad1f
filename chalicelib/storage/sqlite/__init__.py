"""Storage on one SQLite file, for the one-machine gateway."""
