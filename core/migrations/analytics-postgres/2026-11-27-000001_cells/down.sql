DROP TABLE analytics_cells;
