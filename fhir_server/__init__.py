"""FHIR R4B server: storage, search index, change log, REST API, subscriptions. Knows nothing of vendors or HL7v2."""
