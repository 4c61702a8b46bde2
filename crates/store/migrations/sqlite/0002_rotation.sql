-- Rotation: a rotated key names its successor and keeps verifying until grace_until.
ALTER TABLE keys ADD COLUMN rotated_to TEXT;
ALTER TABLE keys ADD COLUMN grace_until INTEGER;
ALTER TABLE keys ADD COLUMN rotated_from TEXT;
