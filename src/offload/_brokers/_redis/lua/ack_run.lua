-- ACK: the acks of ``ack.lua``, the whole call's.
return ack_all(2, (#ARGV - 1) / @ACKED@)
