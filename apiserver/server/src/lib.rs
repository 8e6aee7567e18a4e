//! Placeholder so the workspace resolves; the lead writes the server.
