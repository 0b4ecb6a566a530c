"""The application layer: the command line, its embedded Prefect server, the deployments' steps."""
