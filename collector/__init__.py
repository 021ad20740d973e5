"""The session collector: the cancel page posts its visits here, signed by the company's
backend; each session is committed to a durable log before it is acknowledged, published
into the exit-session drop folder for the scheduled load, and dispatched at once to the
webhook outbox and the write-back fast path."""
