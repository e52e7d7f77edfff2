// pgjdbc alone: hands DriverManager the JDBC URL, user and password from the environment
// variables named on the command line (`JdbcCheck POSTGRES_JDBC_URL POSTGRES_USER
// POSTGRES_PASSWORD`, or the Quarkus set's names), exactly as the kubelet gave them, and nothing
// of its own but the connection's name (PGAPPNAME, which pgjdbc does not read by itself, so the
// test can find the connection). Prints who it connected as, then holds the connection open.
package dbbind.check;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.Properties;

public final class JdbcCheck {
    private JdbcCheck() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: JdbcCheck <URL variable> <user variable> <password variable>");
            System.exit(2);
        }
        Properties properties = new Properties();
        properties.setProperty("user", required(args[1]));
        properties.setProperty("password", required(args[2]));
        String name = System.getenv("PGAPPNAME");
        if (name != null) {
            properties.setProperty("ApplicationName", name);
        }
        try (Connection connection = DriverManager.getConnection(required(args[0]), properties);
                Statement statement = connection.createStatement()) {
            try (ResultSet row = statement.executeQuery(
                    "select current_user::text, current_database()::text")) {
                row.next();
                System.out.println("pgjdbc connected as " + row.getString(1) + " to " + row.getString(2));
            }
            statement.execute("select pg_sleep(3600)");
        } catch (java.sql.SQLException error) {
            System.err.println("pgjdbc: error: " + error.getMessage());
            System.exit(1);
        }
    }

    private static String required(String variable) {
        String value = System.getenv(variable);
        if (value == null) {
            System.err.println("pgjdbc: " + variable + " is not set");
            System.exit(1);
        }
        return value;
    }
}
