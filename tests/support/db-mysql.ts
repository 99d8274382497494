process.env.PKV_TEST_DB = 'mysql';
