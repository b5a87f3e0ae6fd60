-- Tracked booking links: a message that carries one of the business's booking URLs is sent
-- with <public_url>/b/<token> instead; opening it redirects to the URL and moves the
-- conversation's lead to booked. The token is a keyed digest (unguessable); the row holds
-- ids and the business's own URL, no personal data.
CREATE TABLE booking_links (
    token TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    clicked_at BIGINT
);
CREATE INDEX booking_links_conversation ON booking_links (conversation_id);
