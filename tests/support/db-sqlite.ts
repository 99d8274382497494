process.env.PKV_TEST_DB = 'sqlite';
