"""Data stages: sources (collect), cleaning, deduplication and splitting of documents."""
