"""Workspace, metadata store, artifact store and the stage pipeline."""
