"""Developer tooling for e-SSC: never imported by a service, never deployed."""
