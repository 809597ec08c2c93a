-- The PostgreSQL event store (feature_store/postgres_events.py): events, consent, erasures.

-- One row per accepted interaction event (feature_store.schema.Interaction); id is the order
-- stored (readers and the trainer read by it), logged_at when it was stored.
CREATE TABLE events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id       text NOT NULL,
    item_id           text NOT NULL,
    type              text NOT NULL,
    event_time        timestamptz NOT NULL,
    channel           text NOT NULL,
    size              text,
    price             double precision,
    store_id          text,
    return_reason     text,
    recommendation_id text,
    position          integer,
    logged_at         timestamptz NOT NULL DEFAULT now()
);

-- Erasure deletes a customer's rows; `since` reads select by event time.
CREATE INDEX events_customer_id ON events (customer_id);
CREATE INDEX events_event_time ON events (event_time);

-- The latest personalization consent per customer set through the service.
CREATE TABLE consents (
    customer_id     text PRIMARY KEY,
    personalization boolean NOT NULL,
    recorded_at     timestamptz NOT NULL
);

-- Erased customers and the latest time of erasure: events of theirs dated before it are refused
-- at insert time and never read.
CREATE TABLE erasures (
    customer_id text PRIMARY KEY,
    erased_at   timestamptz NOT NULL
);
