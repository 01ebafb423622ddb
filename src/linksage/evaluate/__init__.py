"""Evaluation: exact Recall@k and MRR per Matryoshka dim, baselines, slices, score distributions, HTML report.

``linksage.evaluate.stage`` is the pipeline stage; ``evaluate_embeddings`` scores any vectors;
``python -m linksage.evaluate`` does the same from files. Heavy modules load on first use.
"""
