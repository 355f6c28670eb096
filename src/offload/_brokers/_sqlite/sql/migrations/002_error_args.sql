-- The exception's args as JSON text (ErrorInfo.args), to rebuild it for the producer.

ALTER TABLE jobs ADD COLUMN error_args TEXT;
