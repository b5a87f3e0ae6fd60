DROP TABLE search_feed;
