DROP TABLE booking_links;
