DROP TABLE legal_holds;
DROP TABLE dsr_challenges;
DROP TABLE dsr_requests;
