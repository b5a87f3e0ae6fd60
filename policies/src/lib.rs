//! smartchat-policies (placeholder, filled by its issue).
