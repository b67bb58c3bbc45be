"""The loop's analytics: what the service showed, the purchases that followed, and the experiment's online report."""
