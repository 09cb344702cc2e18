"""The advisor: from what is big to how to make it small, with measured savings."""
