"""LocalStack plugins that let the community build run this project without a Docker engine."""
