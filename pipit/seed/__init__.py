"""Demo data for the four tutorials' datasources (`pipit seed`)."""
