"""Annotation: the human half of the data. On the floor above `data/`, below evaluation and training.

What lives here: annotation tasks and their guidelines, assignment with overlap and gold items, agreement between
annotators, review and adjudication, model-assisted labelling and active learning, and Label Studio import/export.
Labels land in documents, which every floor above reads. See docs/architecture.md.
"""
