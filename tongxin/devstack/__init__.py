"""Local broker and database started and stopped by code (dev, tests, demos)."""
