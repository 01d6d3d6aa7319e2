"""The accounts' pure rules: names, units, roles, the password policy, lockout arithmetic."""
