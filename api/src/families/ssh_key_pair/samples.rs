//! Public keys `ssh-keygen` wrote for the tests, one of each accepted type (comment
//! `alice@example`); their private halves were thrown away.

pub(crate) const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC5IuLCiXYMlLacxbw7F/z075LublNkoDoWi0fqf500/hODR5tb3qsyNYP65RRh/Y6ft0lAIPLHjzlUWOt/jBCBhfYI9DW6yDRfet9knLdWBd/u9ShHChjbM+aFTs6g9ttLkbUdjcijBfk64YUVvjseo1qpfksPUVQqtgOxwfRwTKpRDeWoiFvzsWg8CuVICnHijWBN9YBD9aMAzdXpTV08s6Hj0oFGsQ6RBOpfF1zqDZuevA4EwHtkmQuS468DfvWh/FlBUdSIJH6upLnjzQmc0qgf7S5zpoR5rB1uGLeMS5MZDWkZOmDjcjp+q10Fwm6ZP0QrxWC4l7+QQRaHBrqv alice@example";
pub(crate) const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJYXE4BsnXGTixX4ZmM22E8NSqbuZnQoQ7SALeCCja3T alice@example";
pub(crate) const P256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDnLPnj+iOggPo9MISQ69XmmZjVau+CtzSvBS/aWcVg70IUufdfn0tOV38bdWzEKfeLnL6b3Bv5goWQAl25LdYE= alice@example";
pub(crate) const P384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBPcAI9DlWxEuN8JiFZF7THEN6RX7McHA2PkLe1bIFh7c52njCx7HZWCakEr88GopZflqaLAqztNQea0Tx9RuMleF6xIGKrPpYtwsR1h6tfqL9SBpezIk9DgcDczG6ZIT7w== alice@example";
pub(crate) const P521: &str = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAGy7TeJLCo770bGD/4nSd8o7tZCD+eyyeJPvlPNH7TOBtPtI08Hpd53y4gKXPUqiifxkjIJjw3dErB8ywkpvm4prQBO8SjFmV2+NYZXw+K7ehCxmkKnQA1rCvMxRcVKSOL6aZ8SAzKrc2qtYknzDyp5NGEw7l1LMDDFz7XBaCnm1/Yy3w== alice@example";
pub(crate) const DSS: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAMj1F89kNCxqJVieuFqIx4+TgZZR9dWo41MTK/CbPBnoHESZbI7o77VMI04GwriMoF2vAYVxFUoLm5imYOjcscKI8xT1ikjmzXkfEMqyp6p2KriYdPZPe2Z3vWkxnjNZSYOMI1PRPq7vgXCJ3/sIVAJiOHsJY/1zLPoXb9yx07U/AAAAFQCp395KYZcRHBIwzh16rEhLVM6hpwAAAIAXq/fy/ZEjSgG9KmwxHN1+cHyzZDORWOXJcNPAfkWYNH8kCmCZJkM4/AXWiIB38rkiZdsP7M41ntqRm4kZfI8GY92A1qLH/ZowGpism7VP5ux56bDws6SgmrDf+Xoqpt1DTqxrQ57lOfT9fl2By1DIFrzLhCS+Qk40c2FL5Dey4AAAAIBfsbl+OyExagMhbelzM22vgUFG+2wlNGBYtmFLDvjH0a7FLgn2qfieGKPnEPa9pmnrowde01yJM88cA1hx8GcxaVls5ALp0sMoS7yThLBz/8Q+W24ywgf5KUg/NuLFwJjxbdipqx1OU8iOHaj2+Z97UH+Zx5CyzZxMGTqhAUM9Iw== alice@example";

/// Every sample, with its type.
pub(crate) const ALL: &[(&str, &str)] = &[
    ("ssh-rsa", RSA),
    ("ssh-ed25519", ED25519),
    ("ecdsa-sha2-nistp256", P256),
    ("ecdsa-sha2-nistp384", P384),
    ("ecdsa-sha2-nistp521", P521),
    ("ssh-dss", DSS),
];
