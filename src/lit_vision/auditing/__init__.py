"""Data audits: duplicates, leaks, label issues, outliers and unusable images (the library of ``lit-vision audit``)."""
