"""The local twin of the SAM stack: moto for AWS, an HTTP API emulator, Lambda-like function workers."""
