"""The AKS release notes on GitHub: the releases API and the raw CHANGELOG (``ReleaseFeed``)."""
