"""k3s-rancher's policy pack: `pulumi preview --policy-pack policy` (see README.md here)."""
