"""Running the server: metrics, logs, health, the OpenAPI document and graceful serving."""
