"""Pure functions: raw HL7v2 and vendor records to FHIR resource dicts. No I/O, no sockets, no database."""
