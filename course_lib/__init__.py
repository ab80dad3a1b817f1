"""Shared helpers for the course on initializing and optimizing deep neural networks.

Import what you need from the submodules, e.g. ``from course_lib.models import BaseNetwork``.
Importing the package has no side effects: no seeding, no plotting style, no downloads.
"""

__version__ = "0.1.0"
