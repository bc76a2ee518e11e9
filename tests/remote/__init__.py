"""Remote targets: a real sshd on loopback, and a fake adb server."""
