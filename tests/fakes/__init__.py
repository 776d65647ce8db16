"""In-memory fakes of the domain's ports, for unit tests of the domain without AWS or HTTP."""
