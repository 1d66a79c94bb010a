"""/v1/chat/completions, answered by the serving engines."""
