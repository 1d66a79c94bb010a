"""The web dashboard: static pages under /ui that use only the public /v1 API."""
