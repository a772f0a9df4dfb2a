"""builder_dockerfile: the ``builder`` role, docker build from a Dockerfile."""
