"""Recipes for grading on a cluster (book/instructors.md, "Grading on a cluster"): SLURM through dask-jobqueue
(slurm.py), Kubernetes through the dask-kubernetes operator (kubernetes.yaml)."""
