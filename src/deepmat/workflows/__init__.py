"""End-to-end jobs built from the layers below: training, evaluation, the demo."""
