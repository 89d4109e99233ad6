"""The credit desk: cases opened by referrals and reviews, decisions under delegated
authority, the approved-limit master, users with hashed keys and the append-only trail."""
