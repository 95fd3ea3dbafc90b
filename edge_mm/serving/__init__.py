"""The HTTP server around the Flask app: waitress hardened against slow and hostile clients
(:mod:`.waitress_server`), and graceful shutdown on SIGTERM / SIGINT (:mod:`.drain`)."""
