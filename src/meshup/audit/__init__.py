"""The audit trail: every change and every refused call as a trace, listed like the Cloud Trace
Service's ``ListTraces``."""
